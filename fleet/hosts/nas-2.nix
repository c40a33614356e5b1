{ role = "nas"; }
