{ role = "cloud_builder"; }
