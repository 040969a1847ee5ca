"""Pure matching core: no framework imports."""
