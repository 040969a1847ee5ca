"""Pure settlement core: no framework imports."""
