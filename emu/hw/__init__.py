"""The hardware: memory, paging, TLB, MMU, CPU and devices.

Plain, fast Python: no simpy, no VMM, no rich.
"""
