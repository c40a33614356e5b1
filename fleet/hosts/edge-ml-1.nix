{ role = "edge_ml"; system = "aarch64-linux"; }
