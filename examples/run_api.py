"""Assemble a tiny kernel from a string and run it natively and under shadow
paging with the Python API; the guest cannot tell the two apart."""

from emu import Config, assemble, run

SOURCE = """
bits 32
org 0x1000
_start:
    mov esp, 0x8000
    mov ecx, 10             ; sum 1..10
    mov eax, 0
.next:
    add eax, ecx
    dec ecx
    jne .next
    mov [result], eax       ; leave it in memory too
    out 0xF4, eax           ; power off: the status is the sum
result: dd 0
"""

image = assemble(SOURCE, "sum.s")
print(f"assembled {image.size} bytes, entry {image.entry:#x}, "
      f"labels: {', '.join(sorted(image.labels))}")
results = {}
for mode in ("native", "shadow"):
    r = run(image, Config(mode=mode))
    results[mode] = r
    vmm = r.stats.get("vmm")
    exits = vmm["exits_total"] if vmm else 0
    print(f"{mode:>6}: {r.outcome}, status {r.exit_status}, eax {r.registers['eax']}, "
          f"{r.instructions} instructions, {r.cycles:,} cycles, {exits} VM exits")
same = results["native"].guest_visible() == results["shadow"].guest_visible()
print("guest-visible results identical:", same)
