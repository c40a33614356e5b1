{ role = "laptop"; }
