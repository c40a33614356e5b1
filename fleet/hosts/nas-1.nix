# The primary NAS also serves the fleet's backups over NFS.
{
  role = "nas";
  units = { "nfs-exports.service" = { }; };
}
