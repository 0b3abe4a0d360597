"""The discrete-event simulator of a disaggregated cluster: the default ``ClusterBackend``."""
