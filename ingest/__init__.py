"""ClusterQA ingest."""
