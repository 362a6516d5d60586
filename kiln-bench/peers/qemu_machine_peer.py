#!/usr/bin/env python3
"""The peer harness: QEMU's own Python harness (qemu.machine.QEMUMachine over qemu.qmp) and a bare blocking
QMP client, driving the operations Kiln's bench measures. Standard library only, plus QEMU's python/ folder
(kiln-bench/peers/fetch-qemu-python.sh prints where it is).

    qemu_machine_peer.py --python DIR --kernel K --initrd I [--append A] [--runs N] [--qmp M]
        runs every operation and prints one JSON object with the times (milliseconds)
    qemu_machine_peer.py --python DIR --serve --config JSON
        answers requests, one JSON object a line on stdin, one a line on stdout (the bench interleaves
        its runs with Kiln's this way):
        {"op": "launch-quit"}                    QEMUMachine: launch (spawn, QMP greeting, capabilities) → quit
        {"op": "bare-launch-quit"}               the same with a bare blocking client
        {"op": "boot"}                           QEMUMachine: launch → ready marker on the console → shutdown
        {"op": "qmp", "client": C, "n": N, "warmup": W}
                                                 N query-status round trips against a paused QEMU, C one of
                                                 "async" (qemu.qmp.QMPClient in one event loop), "machine"
                                                 (QEMUMachine.qmp(), the sync wrapper) or "bare"
        {"op": "exit"}
The config names the binary and the arguments: {"binary": B, "paused_args": [...], "boot_args": [...],
"marker": "KILN-READY"}; boot_args go with a console on QEMUMachine's console socket.
"""
import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

DEFAULT_PAUSED = ["-M", "none", "-S", "-nodefaults", "-no-user-config", "-m", "16"]


def now_ms(t0):
    return (time.perf_counter() - t0) * 1000.0


def vm_hwm_kib(pid):
    """Peak resident set of a process, from /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Peer:
    def __init__(self, config):
        from qemu.machine import QEMUMachine  # imported here: --python sets the path first
        self.QEMUMachine = QEMUMachine
        self.binary = config.get("binary", "qemu-system-x86_64")
        self.paused_args = config.get("paused_args", DEFAULT_PAUSED)
        self.boot_args = config.get("boot_args")
        self.marker = config.get("marker", "KILN-READY").encode()
        self.tmp = tempfile.mkdtemp(prefix="kiln-peer-")

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def machine(self, args):
        return self.QEMUMachine(self.binary, args=args, base_temp_dir=self.tmp)

    def launch_quit(self):
        t0 = time.perf_counter()
        vm = self.machine(self.paused_args)
        vm.launch()
        ready = now_ms(t0)
        vm.shutdown()
        return {"ms": now_ms(t0), "qmp_ready_ms": ready}

    def bare_launch_quit(self):
        """Spawn, connect, greeting, capabilities, quit, wait: the least a client can do."""
        t0 = time.perf_counter()
        d = tempfile.mkdtemp(dir=self.tmp)
        path = os.path.join(d, "qmp.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(1)
        p = subprocess.Popen([self.binary, "-display", "none", "-vga", "none", "-chardev", f"socket,id=mon,path={path}",
                              "-mon", "chardev=mon,mode=control"] + self.paused_args,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            srv.settimeout(30)
            s, _ = srv.accept()
            f = s.makefile("rb")
            f.readline()
            s.sendall(b'{"execute":"qmp_capabilities"}')
            f.readline()
            ready = now_ms(t0)
            s.sendall(b'{"execute":"quit"}')
            f.readline()
            p.wait(30)
            s.close()
            return {"ms": now_ms(t0), "qmp_ready_ms": ready}
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            srv.close()
            shutil.rmtree(d, ignore_errors=True)

    def boot(self):
        if not self.boot_args:
            raise ValueError("no boot_args in the config (give --kernel and --initrd)")
        t0 = time.perf_counter()
        vm = self.machine(self.boot_args)
        vm.set_console()
        try:
            vm.launch()
            launched = now_ms(t0)
            con = vm.console_socket
            con.settimeout(120)
            # the phases on the way, as the bench plots them: each seen in the lines that have arrived
            marks = {"linux": b"Linux version", "init": b"Run /init"}
            times = {}
            seen = b""
            while self.marker not in seen:
                chunk = con.recv(65536)
                if not chunk:
                    raise RuntimeError("console closed before the ready marker")
                seen = seen[-256:] + chunk
                for name, text in marks.items():
                    if name not in times and text in seen:
                        times[name] = now_ms(t0)
            ready = now_ms(t0)
            hwm = vm_hwm_kib(vm.get_pid())
            t1 = time.perf_counter()
            vm.shutdown()
            return {"qmp_ready_ms": launched, "linux_ms": times.get("linux"), "init_ms": times.get("init"),
                    "ready_ms": ready, "teardown_ms": now_ms(t1), "vmm_hwm_kib": hwm}
        finally:
            vm.shutdown(hard=True)

    def qmp(self, client, n, warmup):
        if client == "bare":
            return self.bare_qmp(n, warmup)
        vm = self.machine(self.paused_args)
        vm.launch()
        try:
            times = []
            if client == "machine":
                for i in range(warmup + n):
                    t = time.perf_counter()
                    vm.qmp("query-status")
                    times.append(now_ms(t))
            elif client == "async":
                legacy = vm._qmp            # qemu.qmp.legacy.QEMUMonitorProtocol
                qmp_client = legacy._qmp    # its qemu.qmp.QMPClient, on legacy._aloop

                async def run():
                    for i in range(warmup + n):
                        t = time.perf_counter()
                        await qmp_client.execute("query-status")
                        times.append(now_ms(t))
                legacy._aloop.run_until_complete(run())
            else:
                raise ValueError("client: async, machine or bare, not " + repr(client))
            return {"times_ms": times[warmup:]}
        finally:
            vm.shutdown()

    def bare_qmp(self, n, warmup):
        d = tempfile.mkdtemp(dir=self.tmp)
        path = os.path.join(d, "qmp.sock")
        p = subprocess.Popen([self.binary, "-display", "none", "-vga", "none", "-qmp", f"unix:{path},server=on,wait=off"]
                             + self.paused_args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(path):
                if time.monotonic() > deadline or p.poll() is not None:
                    raise RuntimeError("QEMU's QMP socket did not appear")
                time.sleep(0.005)
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = s.makefile("rb")
            f.readline()
            s.sendall(b'{"execute":"qmp_capabilities"}')
            f.readline()
            times = []
            for i in range(warmup + n):
                t = time.perf_counter()
                s.sendall(b'{"execute":"query-status"}')
                f.readline()
                times.append(now_ms(t))
            s.close()
            return {"times_ms": times[warmup:]}
        finally:
            p.kill()
            p.wait()
            shutil.rmtree(d, ignore_errors=True)

    def handle(self, req):
        op = req.get("op")
        if op == "launch-quit":
            return self.launch_quit()
        if op == "bare-launch-quit":
            return self.bare_launch_quit()
        if op == "boot":
            return self.boot()
        if op == "qmp":
            return self.qmp(req.get("client", "async"), int(req.get("n", 2000)), int(req.get("warmup", 500)))
        raise ValueError("unknown op " + repr(op))


def tsc_khz():
    """The host's TSC rate as Kiln passes it to guests (tsc_early_khz), from /proc/cpuinfo; 0 if unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return round(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError):
        pass
    return 0


def boot_args(kernel, initrd, append, tmp):
    """The default image's boot as Kiln's raw peer runs it, agent port included (QEMUMachine adds the console)."""
    khz = tsc_khz()
    cmdline = "console=ttyS0 " + (f"tsc_early_khz={khz} " if khz else "") + (append or "")
    return ["-M", "microvm,rtc=on,isa-serial=on", "-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults",
            "-no-user-config", "-no-reboot", "-device", "virtio-serial-device",
            "-chardev", f"socket,id=qga,server=on,wait=off,path={os.path.join(tmp, 'qga.sock')}",
            "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", required=True, help="QEMU's python/ folder (fetch-qemu-python.sh prints it)")
    ap.add_argument("--serve", action="store_true", help="answer JSON requests on stdin")
    ap.add_argument("--config", help="JSON: binary, paused_args, boot_args, marker")
    ap.add_argument("--kernel")
    ap.add_argument("--initrd")
    ap.add_argument("--append", default="")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--qmp", type=int, default=2000)
    a = ap.parse_args()
    sys.path.insert(0, a.python)
    logging.basicConfig(level=logging.WARNING)
    config = json.loads(a.config) if a.config else {}
    peer = Peer(config)
    if a.kernel and a.initrd and not peer.boot_args:
        peer.boot_args = config["boot_args"] = boot_args(a.kernel, a.initrd, a.append, peer.tmp)
    try:
        if a.serve:
            out = sys.stdout
            for line in sys.stdin:
                if not line.strip():
                    continue
                req = json.loads(line)
                if req.get("op") == "exit":
                    break
                try:
                    res = peer.handle(req)
                except Exception as e:  # the bench reports it with the request
                    res = {"error": f"{type(e).__name__}: {e}"}
                out.write(json.dumps(res) + "\n")
                out.flush()
        else:
            import qemu.machine
            results = {"qemu_python": os.path.dirname(os.path.dirname(qemu.machine.__file__)),
                       "python": sys.version.split()[0], "config": config}
            results["launch_quit"] = [peer.launch_quit() for _ in range(a.runs)]
            results["bare_launch_quit"] = [peer.bare_launch_quit() for _ in range(a.runs)]
            for client in ("async", "machine", "bare"):
                results["qmp_" + client] = peer.qmp(client, a.qmp, min(500, a.qmp))
            if config.get("boot_args"):
                results["boot"] = [peer.boot() for _ in range(a.runs)]
            json.dump(results, sys.stdout, indent=1)
            sys.stdout.write("\n")
    finally:
        peer.close()


if __name__ == "__main__":
    main()
