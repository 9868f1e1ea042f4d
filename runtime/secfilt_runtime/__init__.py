"""secfilt-runtime: an OCI runtime whose sandbox adds seccomp-BPF and ptrace policy."""

__version__ = "0.1.0"
