"""ClusterQA chat."""
