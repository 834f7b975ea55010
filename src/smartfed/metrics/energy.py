"""The energy model (docs/energy.md): device compute from measured CPU time, radio from bytes moved.

    E = cpu_s * cpu_watts + bytes_up * uplink_j_per_byte + bytes_down * downlink_j_per_byte

per client per round, with the constants from the run config's [energy] section (defaults and their
sources in docs/energy.md). A dropped client still received the global state: its download counts.
How a method's tokens count as compute (forward-pass equivalents) is the method's own
`passes_per_token` (smartfed.methods).
"""


def client_energy(energy, record) -> tuple[float, float]:
    """(compute J, radio J) of one client's round from its ClientRecord."""
    compute = (record.cpu_s or 0.0) * energy.cpu_watts
    radio = record.bytes_up * energy.uplink_j_per_byte + record.bytes_down * energy.downlink_j_per_byte
    return compute, radio


def round_energy(energy, clients: list) -> dict[str, float]:
    compute, radio = (sum(parts) for parts in zip(*(client_energy(energy, c) for c in clients))) if clients else (0.0, 0.0)
    return {"energy_compute_j": compute, "energy_radio_j": radio}
