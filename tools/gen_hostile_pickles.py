#!/usr/bin/env python3
"""Hostile .pth files for ferc's pickle reader, crafted with Python's own pickle module.

A pickle is a program: these files call os.system, builtins.eval, builtins.exec,
subprocess.Popen, getattr and importlib, and try REDUCE, INST, OBJ and NEWOBJ on things a
state_dict never holds. torch.save would write them just the same if a user pickled such an
object, so they are what a malicious checkpoint looks like. ferc must refuse every one of them,
naming the global or the construct, and never execute anything. Nothing here is unpickled.

Writes tests/fixtures/io/hostile/<name>.pth (both of torch's layouts: the zip archive with
archive/data.pkl, and the legacy stream of pickles) and expect.tsv: file, then the text the
error message must contain. Run: python3 tools/gen_hostile_pickles.py
"""
import builtins
import collections
import importlib
import io
import os
import pickle
import struct
import subprocess
import zipfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io", "hostile")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Call:
    """An object whose pickle calls fn(*args) on load: the classic pickle exploit."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def state_dict_with(payload):
    """A state_dict-like OrderedDict with one hostile value next to an ordinary one."""
    sd = collections.OrderedDict()
    sd["conv1.weight"] = [0.0, 1.0]
    sd["evil"] = payload
    return sd


def zip_pth(data_pkl):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def legacy_pth(data_pkl):
    head = pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                          "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    return head + data_pkl


class Inst:
    """Pickled by protocol 0/1 with INST/OBJ when it has no __reduce__ of its own."""

    def __init__(self):
        self.x = 1


class NewObj:
    """Pickled with NEWOBJ (protocol 2)."""

    def __new__(cls, *a):
        return object.__new__(cls)

    def __getnewargs__(self):
        return (1,)


def cases():
    """(name, pickle bytes, text the refusal must contain)"""
    p2 = lambda obj: pickle.dumps(obj, protocol=2)
    p4 = lambda obj: pickle.dumps(obj, protocol=4)
    yield "os_system", p2(state_dict_with(Call(os.system, "echo pwned"))), "posix.system"
    yield "os_system_p4", p4(state_dict_with(Call(os.system, "echo pwned"))), "posix.system"
    yield "builtins_eval", p2(Call(builtins.eval, "__import__('os').system('echo pwned')")), "__builtin__.eval"
    yield "builtins_eval_p4", p4(Call(builtins.eval, "1+1")), "builtins.eval"
    yield "builtins_exec", p4(Call(builtins.exec, "import os")), "builtins.exec"
    yield "subprocess_popen", p4(state_dict_with(Call(subprocess.Popen, ["echo", "pwned"]))), "subprocess.Popen"
    # protocol 2 writes subprocess under its Python 2 name
    yield "subprocess_popen_p2", p2(state_dict_with(Call(subprocess.Popen, ["echo", "pwned"]))), "commands.Popen"
    yield "subprocess_check_output", p4(Call(subprocess.check_output, ["id"])), "subprocess.check_output"
    yield "getattr", p4(Call(getattr, "pwned", "upper")), "builtins.getattr"
    yield "importlib", p4(Call(importlib.import_module, "os")), "importlib.import_module"
    # protocol 0 (text opcodes, PUT): refused at its first opcode torch.save never writes
    yield "inst_protocol0", pickle.dumps(state_dict_with(Inst()), protocol=0), "(PUT)"
    yield "newobj", p2(NewObj()), "__main__.NewObj"
    # REDUCE applied to something that is not a callable global: a string, then a tuple.
    yield "reduce_on_string", b"\x80\x02X\x04\x00\x00\x00evil)R.", "REDUCE"
    yield "reduce_on_tuple", b"\x80\x02K\x01\x85)R.", "REDUCE"
    # REDUCE of an allowed global used for something else: a storage class called directly,
    # and OrderedDict called with arguments.
    yield "reduce_on_storage_class", b"\x80\x02ctorch\nFloatStorage\nK\x10\x85R.", "REDUCE"
    yield "ordered_dict_with_args", b"\x80\x02ccollections\nOrderedDict\n]\x85R.", "OrderedDict"
    # INST and OBJ written by hand with a dangerous class.
    yield "inst_os_system", b"\x80\x02(X\x0a\x00\x00\x00echo pwnedios\nsystem\n.", "os.system"
    yield "inst_ordered_dict", b"\x80\x02(icollections\nOrderedDict\n.", "INST"
    yield "obj_os_system", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echoo.", "os.system"


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = []
    for name, data, needle in cases():
        for layout, make in (("zip", zip_pth), ("legacy", legacy_pth)):
            fn = f"{name}_{layout}.pth"
            with open(os.path.join(OUT, fn), "wb") as f:
                f.write(make(data))
            lines.append(f"{fn}\t{needle}\n")
    with open(os.path.join(OUT, "expect.tsv"), "w") as f:
        f.write("# file\ttext the refusal must contain (tools/gen_hostile_pickles.py)\n")
        f.writelines(lines)
    print(f"{len(lines)} hostile files in {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
