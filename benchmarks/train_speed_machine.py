"""The machine, read by both sides of benchmarks/train_speed.py: /proc fields (memory,
CPU model, this process's RSS and its peak), library versions and the GPU name.

Framework-free: the driver imports it, and so does every worker before its framework.
"""

import importlib.metadata
import os
import platform
import shutil
import subprocess


def proc_fields(path, keys):
    """`{key: value}` of the `key: value` lines of a /proc file (the first line of each key),
    as stripped strings; {} when the file cannot be read (not Linux)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in keys and key not in out:
                    out[key] = value.strip()
    except OSError:
        pass
    return out


def proc_bytes(path, keys):
    """`{key: bytes}` of the `key: N kB` lines of a /proc file (meminfo, self/status)."""
    return {k: int(v.split()[0]) * 1024 for k, v in proc_fields(path, keys).items()}


def proc_status():
    """VmRSS and VmHWM of this process in bytes (Linux); {} elsewhere."""
    return proc_bytes("/proc/self/status", ("VmRSS", "VmHWM"))


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mb(n):
    """Bytes -> MiB, None kept."""
    return None if n is None else n / 2 ** 20


def machine_info():
    """Platform, CPU, memory, library versions and GPU name: the `machine` of a result."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_cores": os.cpu_count(),
            "python": platform.python_version(), "cpu_model": platform.processor() or None}
    cpu = proc_fields("/proc/cpuinfo", ("model name",)).get("model name")
    if cpu is not None:
        info["cpu_model"] = cpu
    total = proc_bytes("/proc/meminfo", ("MemTotal",)).get("MemTotal")
    if total is not None:
        info["memory_gb"] = round(total / 2 ** 30, 1)
    versions = {}
    for pkg in ("keras", "keras-mim", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "transformers"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    info["versions"] = versions
    info["gpu"] = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True).stdout.strip()
        info["gpu"] = out.splitlines()[0] if out else None
    return info
