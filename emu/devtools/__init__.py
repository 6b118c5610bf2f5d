"""Tools for developing the emulator itself: not used at run time."""
