"""ClusterQA index."""
