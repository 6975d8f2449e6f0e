"""Runs a notebook top to bottom on a Jupyter kernel without a browser and writes it back with its outputs.

    python execute.py NOTEBOOK --out EXECUTED.ipynb [--html PAGE.html] [--timeout 600] [--grace 0.2]

Started by tasks/notebook/run.ts from the project's venv (.venv-notebook/), where jupyter_client, nbformat and
nbconvert are installed. Why not nbclient: the Deno kernel sometimes publishes `status: idle` before the last
outputs of a cell, and nbclient stops listening at idle, so those outputs are lost. Here:

- after idle, iopub is read on for a grace period, extended while messages keep arriving (up to a cap);
- a message that comes later still is routed by its parent header to its own cell (not to the cell running
  now), and iopub is drained once more after the last cell;
- any error output, or an execute_reply whose status is not "ok", stops the run with the notebook, the index
  of the cell in `cells[]` and the error; so do a cell running past its timeout and a kernel that dies;
- update_display_data updates every output with that display_id, clear_output clears (at once or, with
  wait, before the next output), and consecutive stream outputs of one stream are merged, as in JupyterLab.

Progress (one line when a cell starts, one when it ends) goes to stderr. Exit status: 0 when every cell ran,
1 when one failed (the notebook is still written, with the outputs up to the failure), 2 for bad arguments.
"""

import argparse
import os
import re
import sys
import time
from queue import Empty

import nbformat
import zmq
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_client.manager import KernelManager

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Longest the grace period may be stretched by a cell that keeps printing after idle (e.g. a timer loop).
GRACE_CAP_SECONDS = 5.0
# How often a wait without messages checks that the kernel process is still alive.
LIVENESS_SECONDS = 0.5


class RunFailure(Exception):
    """A failure that ends the run; its message names the notebook and, where there is one, the cell."""


def log(line):
    print(line, file=sys.stderr, flush=True)


def error_of(content):
    """(ename, evalue, traceback) of an error output or an execute_reply with status "error"."""
    return content.get("ename", "Error"), content.get("evalue", ""), content.get("traceback", [])


def cell_name(index, cell):
    """`cells[i]` (the index in the notebook's list of cells, markdown included) and the cell's tags."""
    tags = cell.get("metadata", {}).get("tags", [])
    return f"cells[{index}]" + (f" [{', '.join(tags)}]" if tags else "")


def first_line(source, width=70):
    line = next((l for l in source.splitlines() if l.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


class CellState:
    """Outputs of one cell as they arrive, plus what the runner needs to know about its execution."""

    def __init__(self, index, cell):
        self.index = index
        self.cell = cell
        self.idle = False
        self.reply = None
        self.errors = []  # (ename, evalue, traceback) from error outputs or an error reply
        self.clear_pending = False

    def describe(self):
        return cell_name(self.index, self.cell)


class Runner:
    def __init__(self, path, nb, kernel_name, cwd, timeout, startup_timeout, grace):
        self.path = path
        self.nb = nb
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.grace = grace
        self.cells_by_msg = {}  # execute request msg_id → CellState
        self.displays = {}  # display_id → outputs (dicts inside cells) showing it
        self.km = None
        self.kc = None

    # --- kernel lifetime -------------------------------------------------------------------------------

    def start(self):
        self.km = KernelManager(kernel_name=self.kernel_name)
        try:
            self.km.start_kernel(cwd=self.cwd)
        except NoSuchKernel:
            raise RunFailure(
                f"{self.path}: no kernelspec named {self.kernel_name!r} (JUPYTER_PATH="
                f"{os.environ.get('JUPYTER_PATH', '')!r}); run `deno task notebook --setup-only`"
            ) from None
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=self.startup_timeout)
        except RuntimeError as error:
            raise RunFailure(f"{self.path}: the {self.kernel_name} kernel did not start: {error}") from None
        self.poller = zmq.Poller()
        self.poller.register(self.kc.iopub_channel.socket, zmq.POLLIN)
        self.poller.register(self.kc.shell_channel.socket, zmq.POLLIN)

    def stop(self, now):
        """Shuts the kernel down: politely after a run that went well, at once after a failure."""
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None and self.km.has_kernel:
            try:
                self.km.shutdown_kernel(now=now or not self.km.is_alive())
            except Exception as error:  # a kernel that is already gone may fail to shut down cleanly
                log(f"warning: kernel shutdown: {error}")

    def kernel_exit(self):
        process = getattr(self.km.provisioner, "process", None)
        code = None if process is None else process.poll()
        return "" if code is None else f" (exit code {code})"

    # --- messages --------------------------------------------------------------------------------------

    def pump(self, wait):
        """Handles every message that arrives within `wait` seconds; returns how many iopub messages came."""
        events = dict(self.poller.poll(max(0, int(wait * 1000))))
        count = 0
        if self.kc.iopub_channel.socket in events:
            while True:
                try:
                    msg = self.kc.iopub_channel.get_msg(timeout=0)
                except Empty:
                    break
                count += 1
                self.on_iopub(msg)
        if self.kc.shell_channel.socket in events:
            while True:
                try:
                    msg = self.kc.shell_channel.get_msg(timeout=0)
                except Empty:
                    break
                state = self.cells_by_msg.get(msg["parent_header"].get("msg_id"))
                if state is not None and msg["msg_type"] == "execute_reply":
                    self.on_reply(state, msg["content"])
        return count

    def on_reply(self, state, content):
        state.reply = content
        if content.get("execution_count") is not None:
            state.cell["execution_count"] = content["execution_count"]
        status = content.get("status")
        if status == "error":
            state.errors.append(error_of(content))
        elif status != "ok":
            state.errors.append(("ExecutionAborted", f"execute_reply status {status!r}", []))

    def on_iopub(self, msg):
        state = self.cells_by_msg.get(msg["parent_header"].get("msg_id"))
        if state is None:
            return  # kernel_info replies while starting, or messages of no cell of ours
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "status":
            if content.get("execution_state") == "idle":
                state.idle = True
        elif kind == "execute_input":
            if content.get("execution_count") is not None:
                state.cell["execution_count"] = content["execution_count"]
        elif kind == "clear_output":
            if content.get("wait"):
                state.clear_pending = True
            else:
                state.cell["outputs"] = []
                state.clear_pending = False
        elif kind == "update_display_data":
            self.update_display(content)
        elif kind in ("stream", "display_data", "execute_result", "error"):
            self.add_output(state, msg)

    def update_display(self, content):
        display_id = content.get("transient", {}).get("display_id")
        for output in self.displays.get(display_id, []):
            output["data"] = content.get("data", {})
            output["metadata"] = content.get("metadata", {})

    def add_output(self, state, msg):
        kind = msg["msg_type"]
        content = msg["content"]
        if state.clear_pending:
            state.cell["outputs"] = []
            state.clear_pending = False
        outputs = state.cell["outputs"]
        if kind == "stream":
            last = outputs[-1] if outputs else None
            if last is not None and last["output_type"] == "stream" and last["name"] == content["name"]:
                last["text"] += content["text"]
                return
        if kind == "error":
            state.errors.append(error_of(content))
        output = nbformat.v4.output_from_msg(msg)
        display_id = content.get("transient", {}).get("display_id")
        if display_id and kind in ("display_data", "execute_result"):
            # As in Jupyter, showing a display_id again also refreshes the outputs already showing it.
            self.update_display(content)
            self.displays.setdefault(display_id, []).append(output)
        outputs.append(output)

    # --- cells -----------------------------------------------------------------------------------------

    def fail_on_errors(self):
        for state in self.cells_by_msg.values():
            if state.errors:
                ename, evalue, traceback = state.errors[0]
                text = ANSI.sub("", "\n".join(traceback)).strip()
                if text.startswith(f"{ename}: {evalue}"):
                    text = text[len(f"{ename}: {evalue}") :].strip("\n")
                detail = "".join(f"\n    {line.strip()}" for line in text.splitlines())
                raise self.cell_failure(state, f"failed: {ename}: {evalue}{detail}")

    def cell_failure(self, state, problem):
        return RunFailure(
            f"{self.path}: {state.describe()} {problem}\n"
            f"  cell source starts: {first_line(state.cell.source)}"
        )

    def run_cell(self, index, cell):
        state = CellState(index, cell)
        msg_id = self.kc.execute(cell.source, store_history=True, allow_stdin=False, stop_on_error=True)
        self.cells_by_msg[msg_id] = state
        started = time.monotonic()
        deadline = started + self.timeout
        quiet_until = None  # set at idle: the grace period ends here unless messages keep coming
        grace_cap = None
        while True:
            now = time.monotonic()
            if state.idle and quiet_until is None:
                quiet_until = now + self.grace
                grace_cap = now + GRACE_CAP_SECONDS
            if quiet_until is not None and state.reply is not None and now >= quiet_until:
                break
            if now >= deadline:
                raise self.cell_failure(state, f"timed out after {self.timeout:g} s")
            # Before idle, and after the grace period while the reply is still missing: wait long.
            wait = LIVENESS_SECONDS
            if quiet_until is not None and now < quiet_until:
                wait = min(LIVENESS_SECONDS, quiet_until - now)
            if self.pump(min(wait, deadline - now)) > 0 and quiet_until is not None:
                quiet_until = min(grace_cap, max(quiet_until, time.monotonic() + self.grace))
            elif not self.km.is_alive():
                raise self.cell_failure(state, f"stopped: the kernel died{self.kernel_exit()}")
        return time.monotonic() - started

    def run(self):
        code_cells = [(i, c) for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]
        for _, cell in code_cells:
            cell["outputs"] = []
            cell["execution_count"] = None
        name = os.path.basename(self.path)
        for i, cell in code_cells:
            if not cell.source.strip():
                continue
            log(f"[{name}] {cell_name(i, cell)} {first_line(cell.source)}")
            seconds = self.run_cell(i, cell)
            self.fail_on_errors()
            log(f"[{name}] {cell_name(i, cell)} done in {seconds:.1f} s, {len(cell.outputs)} output(s)")
        # Late messages of any cell: drain until iopub has been quiet for the grace period (or the cap).
        cap = time.monotonic() + GRACE_CAP_SECONDS
        quiet_until = time.monotonic() + self.grace
        while time.monotonic() < quiet_until:
            if self.pump(quiet_until - time.monotonic()) > 0:
                quiet_until = min(cap, time.monotonic() + self.grace)
        self.fail_on_errors()


def write_html(nb, path):
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(body)


def main():
    parser = argparse.ArgumentParser(description="Execute a notebook headlessly; write it with its outputs.")
    parser.add_argument("notebook")
    parser.add_argument("--out", required=True, help="where the executed notebook is written")
    parser.add_argument("--html", help="also render the executed notebook to this HTML file")
    parser.add_argument("--kernel", help="kernelspec name (default: the notebook's, else deno)")
    parser.add_argument("--cwd", help="kernel working directory (default: the notebook's folder)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one cell may run")
    parser.add_argument("--startup-timeout", type=float, default=120, help="seconds to start the kernel")
    parser.add_argument("--grace", type=float, default=0.2, help="seconds to read on after a cell's idle")
    args = parser.parse_args()

    nb = nbformat.read(args.notebook, as_version=4)
    kernel = args.kernel or nb.metadata.get("kernelspec", {}).get("name") or "deno"
    cwd = args.cwd or os.path.dirname(os.path.abspath(args.notebook))
    runner = Runner(args.notebook, nb, kernel, cwd, args.timeout, args.startup_timeout, args.grace)
    failure = None
    started = time.monotonic()
    try:
        runner.start()
        runner.run()
    except RunFailure as error:
        failure = error
    except KeyboardInterrupt:
        failure = RunFailure(f"{args.notebook}: interrupted")
    finally:
        runner.stop(now=failure is not None)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    nbformat.write(nb, args.out)
    if failure is not None:
        log(f"error: {failure}")
        log(f"the notebook as far as it ran: {args.out}")
        return 1
    if args.html:
        write_html(nb, args.html)
    log(f"[{os.path.basename(args.notebook)}] executed in {time.monotonic() - started:.1f} s → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
