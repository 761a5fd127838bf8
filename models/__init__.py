"""The shipped model bundles, installed as package data so that a wheel install verifies with
no checkout. `edge_app.runtime.shipped_bundle()` is the one place that finds them."""
