"""The atmospheric scattering model and what follows from it without learning: haze synthesis, the dark channel
prior, the guided filter, and fog visibility in metres from the transmission."""
