"""kidecar's built-in plugins: each subpackage is a hookimpl module registered through the
``kidecar`` entry-point group, exactly like a third-party plugin."""
