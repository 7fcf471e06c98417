"""Pure decisions and data shapes: no I/O, no Azure SDK, no clock (time is passed in).

Everything here can be tested with a table of inputs and expected outputs.
"""
