"""``emu lab``: students write the shadow-paging VMM, level by level.

    emu lab list                      the levels
    emu lab new LEVEL [DIR]           a skeleton VMM and the level's handout
    emu lab check FILE [--level N]    run the levels' guests under FILE's VMM

A VMM is one Python file with one ``emu.vmm.api.ShadowVmm`` subclass.
``given`` holds working code for the parts a later level asks for.
"""
