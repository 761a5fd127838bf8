"""The USB protocol of BJJCZ LMC galvo boards (EzCAD2's boards, USB 9588:9899): packets,
unit conversions, and how long a list takes to run.

Taken from galvoplotter 0.2.0 (meerk40t): the opcodes (``galvo.consts``); a command is six
little-endian uint16 (opcode, five parameters), 12 bytes; a *single* command is one 12-byte
bulk write to endpoint 0x02 answered by 8 bytes on endpoint 0x88 (four uint16, the last the
status word: BUSY 0x04 while a list runs, READY 0x20 while the board takes a list packet); a
*list* packet is 0xC00 bytes (256 list commands), padded with listEndOfList, written without
an answer; the conversions below (speed in galvo bits per ms, the Q-switch period, power as a
12-bit current, a delay's sign in the second word).
Replaced (see `fabrication.galvo`): its connection, which retries by reopening the device and
then swallows the error (a write may be lost or sent twice, unseen); its spooler, which runs
lists asynchronously with no way to learn which ran; its `mark()`/`goto()`, which drop a target
outside the field without a word; and two slips in its `set()` (the polygon delay and the
pulse width keep their old values).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator

from galvo import consts as op

VENDOR, PRODUCT = 0x9588, 0x9899
WRITE_ENDPOINT, READ_ENDPOINT = 0x02, 0x88
COMMAND_BYTES, REPLY_BYTES, LIST_BYTES = 12, 8, 0xC00
LIST_COMMANDS = LIST_BYTES // COMMAND_BYTES
BUSY, READY = 0x04, 0x20
CENTRE = 0x8000  # the field's centre in galvo bits (0..0xFFFF on each axis)
LASER_PORT_BIT, LIGHT_PORT_BIT = 0, 8  # output port bits: laser enable, red guide light

Command = tuple[int, int, int, int, int, int]


def pack(opcode: int, *params: int) -> bytes:
    """One command, 12 bytes; parameters beyond 0xFFFF are refused, never wrapped."""
    words = (opcode, *params, *(0,) * (5 - len(params)))
    if not all(0 <= int(w) <= 0xFFFF for w in words):
        raise ValueError(f"a parameter of command {opcode:#06x} is outside 0..0xFFFF: {words}")
    return struct.pack("<6H", *(int(w) for w in words))


def list_packets(commands: Iterable[bytes]) -> Iterator[bytes]:
    """List commands in 0xC00-byte packets, the last one padded with listEndOfList."""
    packet = bytearray()
    for command in commands:
        packet += command
        if len(packet) == LIST_BYTES:
            yield bytes(packet)
            packet = bytearray()
    if packet:
        yield bytes(packet + pack(op.listEndOfList) * ((LIST_BYTES - len(packet)) // COMMAND_BYTES))


def unpack(data: bytes) -> list[Command]:
    """The commands in a packet (12 bytes each)."""
    return [struct.unpack_from("<6H", data, i) for i in range(0, len(data) - 11, COMMAND_BYTES)]


def reply(status: int, x: int = 0, y: int = 0) -> bytes:
    return struct.pack("<4H", 0, x, y, status)


def status_of(answer: bytes) -> int:
    return struct.unpack("<4H", answer)[3]


def position_of(answer: bytes) -> tuple[int, int]:
    """The mirrors' position in an answer to GetPositionXY: its second and third words, as
    the simulated board answers (galvoplotter reads this command but not its words; a board
    whose answer differs matches no unit's end, and a resume then takes the cautious way)."""
    return struct.unpack("<4H", answer)[1:3]


def speed_bits_per_ms(mm_per_s: float, bits_per_mm: float) -> int:
    """A speed in the board's unit (galvoplotter's `_convert_speed`), at least 1."""
    return max(1, min(0xFFFF, int(mm_per_s * bits_per_mm / 1000.0)))


def qswitch_period(frequency_khz: float) -> int:
    """A fibre source's pulse frequency as the board's Q-switch period."""
    return int(round(20000.0 / frequency_khz)) & 0xFFFF


def current_of_percent(percent: float) -> int:
    """Power in percent as the board's 12-bit mark current."""
    return int(round(percent * 0xFFF / 100.0))


def percent_of_current(current: int) -> float:
    return current * 100.0 / 0xFFF


def delay_words(delay_us: float) -> tuple[int, int]:
    """A delay in µs: its size, and 0x8000 in the second word when it is negative."""
    return int(round(abs(delay_us))), 0x0000 if delay_us >= 0 else 0x8000


def _signed_delay(words: Command) -> float:
    return -words[1] if words[2] & 0x8000 else words[1]


def list_seconds(commands: Iterable[Command], start: tuple[int, int] = (CENTRE, CENTRE)) -> float:
    """How long the board takes to run list commands: jumps at the jump speed plus the jump
    delay; each marked polyline at the mark speed, with the laser-on delay before it, the
    laser-off delay after it and the polygon delay at each corner inside it; listDelayTime
    in 10 µs units. The estimate the driver prints before a job and the pace of the
    simulated board."""
    mark_speed = jump_speed = 1
    on = off = polygon = jump_delay = 0.0
    seconds_us = 0.0
    x, y = start
    marking = False
    for words in commands:
        code = words[0]
        if code == op.listMarkSpeed:
            mark_speed = max(1, words[1])
        elif code == op.listJumpSpeed:
            jump_speed = max(1, words[1])
        elif code == op.listLaserOnDelay:
            on = _signed_delay(words)
        elif code == op.listLaserOffDelay:
            off = _signed_delay(words)
        elif code == op.listPolygonDelay:
            polygon = _signed_delay(words)
        elif code == op.listJumpDelay:
            jump_delay = _signed_delay(words)
        elif code == op.listDelayTime:
            seconds_us += words[1] * 10.0
        elif code in (op.listMarkTo, op.listJumpTo):
            distance = math.dist((x, y), words[1:3])
            x, y = words[1:3]
            if code == op.listMarkTo:
                seconds_us += distance / mark_speed * 1000.0 + (polygon if marking else max(on, 0.0))
                marking = True
            else:
                seconds_us += distance / jump_speed * 1000.0 + jump_delay + (off if marking else 0.0)
                marking = False
    if marking:
        seconds_us += off
    return seconds_us / 1e6
