{ role = "operator"; }
