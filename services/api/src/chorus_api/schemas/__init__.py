"""Request and response bodies of the api (pydantic), one module per resource."""
