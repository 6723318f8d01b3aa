"""HTTP routes of the api (thin: validate, call domain, map errors)."""
