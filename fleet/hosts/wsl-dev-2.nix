{ role = "wsl_dev"; }
