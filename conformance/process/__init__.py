"""The life of a host process the suite or the fuzzer starts itself: start, watch, restart, move its clock."""
