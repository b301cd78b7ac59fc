"""The "secure by default" checks: secrets, private files, bundles, remote text."""
