"""The VMM: PMap, shadow page tables, nested tables and the exit handlers.

Exit handlers are simpy generators: each step yields its simulated cost.
"""
