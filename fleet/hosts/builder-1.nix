{ role = "remote_builder"; }
