"""The device service: accounts, devices, slots, deliveries and reserve codes."""
