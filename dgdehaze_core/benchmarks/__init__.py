"""Speed measured side by side in one run: timing, network and frame-chain rows, detector rows."""
