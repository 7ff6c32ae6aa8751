"""ClusterQA eval."""
