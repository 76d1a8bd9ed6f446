package dev.gmem.kvm;

import java.io.ByteArrayOutputStream;

/**
 * The guest program of the checksum run, in x86-64 machine code, built here one documented
 * instruction at a time. It runs in 64-bit mode with identity-mapped memory and reads one 8-byte
 * word per step:
 *
 * <pre>
 *   inputs: rsi = first address, rcx = steps (at least 1), rdx = stride in bytes, rax = 0
 *   loop:   mov  rbx, [rsi]     ; the word at this page
 *           rol  rax, 1         ; fold: sum = rotl(sum, 1) ^ word
 *           xor  rax, rbx
 *           add  rsi, rdx       ; next page
 *           dec  rcx
 *           jnz  loop
 *           mov  dx, PORT       ; report the 64-bit sum as two 32-bit port writes, low half first
 *           out  dx, eax
 *           shr  rax, 32
 *           out  dx, eax
 *           hlt
 * </pre>
 *
 * Six instructions per page: on a host that emulates the guest (PVM, about 2 µs per
 * instruction), a 512 MiB guest read at every page (131072 pages) takes about 1.6 s.
 */
public final class GuestProgram {
    /** The I/O port the program reports on. */
    public static final int PORT = 0x3f0;

    public static final int INSTRUCTIONS_PER_STEP = 6;

    private GuestProgram() {}

    /** The host's side of the fold, to compare with what the guest reports. */
    public static long fold(long sum, long word) {
        return Long.rotateLeft(sum, 1) ^ word;
    }

    public static byte[] code() {
        ByteArrayOutputStream c = new ByteArrayOutputStream();
        int loop = c.size();
        emit(c, 0x48, 0x8B, 0x1E); // mov rbx, [rsi]    REX.W 8B /r, ModRM 00 011 110
        emit(c, 0x48, 0xD1, 0xC0); // rol rax, 1        REX.W D1 /0, ModRM 11 000 000
        emit(c, 0x48, 0x31, 0xD8); // xor rax, rbx      REX.W 31 /r, ModRM 11 011 000
        emit(c, 0x48, 0x01, 0xD6); // add rsi, rdx      REX.W 01 /r, ModRM 11 010 110
        emit(c, 0x48, 0xFF, 0xC9); // dec rcx           REX.W FF /1, ModRM 11 001 001
        int rel = loop - (c.size() + 2);
        emit(c, 0x75, rel & 0xFF); // jnz loop          75 rel8, relative to the next instruction
        emit(c, 0x66, 0xBA, PORT & 0xFF, PORT >>> 8); // mov dx, PORT   66 BA imm16
        emit(c, 0xEF); // out dx, eax
        emit(c, 0x48, 0xC1, 0xE8, 0x20); // shr rax, 32   REX.W C1 /5 ib, ModRM 11 101 000
        emit(c, 0xEF); // out dx, eax
        emit(c, 0xF4); // hlt
        return c.toByteArray();
    }

    private static void emit(ByteArrayOutputStream c, int... bytes) {
        for (int b : bytes) c.write(b);
    }
}
