"""``emu gdb``: a GDB remote-protocol server over the stepper's session.

``rsp``      the packet framing (checksums, acks, escapes, run lengths)
``tdesc``    the target description: i386 core registers and CR0-CR4
``target``   the machine as GDB sees it: registers, memory, stops, reverse
``monitor``  ``monitor`` commands: walk, tlb, pmap, stats, mode, disas
``server``   the TCP server, one client at a time
``command``  the ``emu gdb`` subcommand
"""
