# Each role's default composition of profiles. A host file adds to it.
profiles: with profiles; {
  wsl_dev = [ base secrets dev wsl ];
  laptop = [ base secrets dev laptop ];
  remote_builder = [ base secrets builder ];
  cloud_builder = [ base secrets builder ci ];
  nas = [ base secrets storage ];
  edge_ml = [ base secrets ml ];
  operator = [ base secrets dev operator ];
}
