"""The runtime that drives the data path: supervision of plugin tasks, the results pipeline,
the HTTP servers, periodic work, metrics and logs.
"""
