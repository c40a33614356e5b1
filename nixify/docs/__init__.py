"""nixify's own documentation: the static site (``nixify docs build``), its generated
reference, and the provenance line every generated page carries."""
