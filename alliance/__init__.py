"""Pure alliance core: no framework imports."""
