"""seisbind: bind seismic section images and seismic waveforms in one embedding space."""

__version__ = "0.1.0"
