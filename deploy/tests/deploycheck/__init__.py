"""What `make helm-check` checks the chart, images and monitoring files with.

The test modules next to this package assert; these modules render, validate and extract,
so a test that mutates a copy (a renamed probe path, a renamed setting, an alert on an
unknown metric) runs the very same check and sees it fail.
"""
