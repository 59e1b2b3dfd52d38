## tests/hardening.mk -- the malformed-input corpus and the fuzz targets
## (included from Makefile.am).
