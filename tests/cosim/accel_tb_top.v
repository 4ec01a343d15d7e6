// Testbench top for the exported Accelerator: instruction memory and DRAM as Verilog arrays.
//
// The simulation runs without Python in the loop: cocotb loads the memory images, pulses
// `start` and waits for `dumped`; the C-level clock and this module do everything per cycle.
//
// Defines (prepended by tests/cosim/tb_accelerator.py to the exported Verilog):
//   ACCEL_TOP   module name of the exported accelerator (accelerator_n2_k4_c4_l10_b8, ...)
//   ACCEL_G     DRAM gather lanes  (gb_bus_bytes)     = width of dram_rd__en
//   ACCEL_W     DRAM scatter lanes (num_pe * K0)      = width of dram_wr__en
//   ACCEL_VG    vector executor gather lanes  (hw.rtl.vector_executor.vector_ports) = width of vec_rd__en
//   ACCEL_VW    vector executor scatter lanes                                       = width of vec_wr__en
//   ACCEL_VEC_PORTS  the connections of vec_rd, vec_wr to the lanes after dram_rd's, dram_wr's
//               (empty, and ACCEL_VG = ACCEL_VW = 0, when the accelerator has no vector executor)
//   IMEM_WORDS  instruction memory depth in 256-bit words
//   DRAM_BYTES  DRAM array size in bytes
//
// Protocol served (docs/rtl.md):
//   imem_data   answered combinationally from imem[imem_addr / 32] (zero past the end: an OPCODE error)
//   dram_rd     each enabled lane's byte comes back exactly one cycle later; disabled lanes
//               carry junk (the RTL must ignore them)
//   dram_wr     each enabled lane's byte is written at the end of the cycle it is enabled;
//               writes are applied before the same cycle's reads are served
//   vec_rd, vec_wr  the vector executor's own ports, served as dram_rd and dram_wr (its lanes
//               follow the load/store port's lanes in one loop: vector writes after store writes)
//
// Files, in the simulator's working directory (the cocotb run directory):
//   accel_imem.hex      $readmemh: one 64-hex-digit instruction word per line
//   accel_dram.hex      $readmemh: one byte per line, from address 0
//   accel_dram_out.hex  $writememh: bytes 0 .. tb_dram_bytes-1, one cycle after done/error rose
//
// Checks done here (sticky until the next tb_load): any enabled DRAM lane at or above
// tb_dram_bytes (oob, oob_addr), any DRAM write while done is high (late_write).

`ifndef ACCEL_TOP
`error "define ACCEL_TOP (the exported accelerator module name)"
`endif

module accel_tb_top #(
    parameter integer G = `ACCEL_G,
    parameter integer W = `ACCEL_W,
    parameter integer VG = `ACCEL_VG,
    parameter integer VW = `ACCEL_VW,
    parameter integer IMEM_WORDS = `IMEM_WORDS,
    parameter integer DRAM_BYTES = `DRAM_BYTES
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        start,
    // One cycle high: clear both memories and $readmemh the image files (at that edge).
    input  wire        tb_load,
    // Bytes of the loaded DRAM image: the bound of the address check and of the dump.
    input  wire [31:0] tb_dram_bytes,
    output wire        done,
    output wire        error,
    output wire [2:0]  error_code,
    output wire [47:0] cycle,
    output wire [31:0] imem_addr,
    output wire        finished,         // done | error
    output reg         dumped,           // accel_dram_out.hex is written
    output reg  [47:0] tb_cycles,        // cycle (counted here) in which finished was first seen
    output reg         oob,
    output reg  [31:0] oob_addr,
    output reg         late_write,
    output wire [31:0] tb_imem_words,    // IMEM_WORDS, read back by the testbench
    output wire [31:0] tb_dram_size      // DRAM_BYTES
);
    assign tb_imem_words = IMEM_WORDS;
    assign tb_dram_size = DRAM_BYTES;
    reg  [255:0] imem [0:IMEM_WORDS-1];
    reg  [7:0]   dram [0:DRAM_BYTES-1];

    wire [255:0]   imem_data;
    // The load/store ports and the vector executor's, as one gather and one scatter port:
    // lanes 0..G-1 (0..W-1) are dram_rd (dram_wr), the rest vec_rd (vec_wr).
    localparam integer RL = G + VG, WL = W + VW;
    wire [RL-1:0]    rd_en;
    wire [32*RL-1:0] rd_addr;
    reg  [8*RL-1:0]  rd_data;
    wire [WL-1:0]    wr_en;
    wire [32*WL-1:0] wr_addr;
    wire [8*WL-1:0]  wr_data;

    // rst and start reach the accelerator through a register: the testbench sets them after a
    // rising edge, so the accelerator sees them one edge later than it would directly, which
    // shifts the whole run by one cycle and changes no count (both are relative to start).
    // Driven straight from top-level inputs they made Verilator recompute all logic that
    // depends on them (every register's reset mux) at each of the two clock edges a cycle.
    reg rst_q = 1'b1, start_q = 1'b0;
    always @(posedge clk) begin
        rst_q <= rst;
        start_q <= start;
    end

    `ACCEL_TOP u_accel (
        .clk(clk), .rst(rst_q), .start(start_q),
        .done(done), .error(error), .error_code(error_code), .cycle(cycle),
        .imem_addr(imem_addr), .imem_data(imem_data),
        .dram_rd__en(rd_en[G-1:0]), .dram_rd__addr(rd_addr[32*G-1:0]), .dram_rd__data(rd_data[8*G-1:0]),
        `ACCEL_VEC_PORTS
        .dram_wr__en(wr_en[W-1:0]), .dram_wr__addr(wr_addr[32*W-1:0]), .dram_wr__data(wr_data[8*W-1:0])
    );

    wire [26:0] imem_word = imem_addr[31:5];
    assign imem_data = (imem_word < IMEM_WORDS) ? imem[imem_word] : 256'd0;
    assign finished = done | error;

    // ---- cycle count: cycle 0 is the first cycle after the accelerator sampled start ----
    reg running, seen, dump_pending;
    reg [47:0] count;
    always @(posedge clk) begin
        if (tb_load) begin
            running <= 1'b0; seen <= 1'b0; dump_pending <= 1'b0; dumped <= 1'b0;
            count <= 48'd0; tb_cycles <= 48'd0;
        end else begin
            if (start_q && !running && !seen) begin
                running <= 1'b1;
                count <= 48'd0;
            end else if (running) begin
                if (finished) begin
                    running <= 1'b0;
                    seen <= 1'b1;
                    tb_cycles <= count;
                    dump_pending <= 1'b1;
                end else begin
                    count <= count + 48'd1;
                end
            end
            if (dump_pending && !dumped) begin
                // One cycle after finished: every write enabled in that cycle is applied.
                if (tb_dram_bytes != 32'd0)
                    $writememh("accel_dram_out.hex", dram, 0, tb_dram_bytes - 32'd1);
                dumped <= 1'b1;
            end
        end
    end

    // ---- memories: load, write port, read port ----
    // The junk of a disabled read lane, 8'h5a ^ lane ^ count, for every lane at once: one wide
    // XOR a cycle, the enabled lanes' bytes written over it below.
    function automatic [8*RL-1:0] lane_numbers_junk;
        input integer unused;
        integer k;
        begin
            for (k = 0; k < RL; k = k + 1) lane_numbers_junk[8*k +: 8] = 8'h5a ^ k[7:0];
        end
    endfunction
    localparam [8*RL-1:0] LANE_JUNK = lane_numbers_junk(0);
    // The memories run on a clock of their own, through the exported clock-gate cell: it ticks only
    // in the cycles of tb_load and those with a lane of either port enabled.  Verilator evaluates
    // what reads rd_data (the load unit's byte mux, every vector row lane's input) at that clock's
    // edges only, not in every cycle as while rd_data was a register of clk (docs/cosim.md, "The
    // DRAM model's clock").  One block holds the writes and the reads, so that a cycle's writes
    // still come before its reads.
    wire mem_clk;
    clock_gate u_mem_gate (.clk(clk), .en(tb_load | |rd_en | |wr_en), .gclk(mem_clk));
    integer i, l;
    reg [31:0] a;
    always @(posedge mem_clk) begin
        if (tb_load) begin
            // Only the image's bytes: past tb_dram_bytes nothing is read (8'hee), written or dumped,
            // and clearing all DRAM_BYTES (64 MiB) cost tens of milliseconds a run.
            for (i = 0; i < DRAM_BYTES && i < tb_dram_bytes; i = i + 1) dram[i] = 8'd0;
            for (i = 0; i < IMEM_WORDS; i = i + 1) imem[i] = 256'd0;
            $readmemh("accel_imem.hex", imem);
            $readmemh("accel_dram.hex", dram);
            oob <= 1'b0;
            oob_addr <= 32'd0;
            late_write <= 1'b0;
            rd_data <= {8*RL{1'b0}};
        end else if (!rst_q) begin
            // While rst_q is high the accelerator still shows the previous run's state (its
            // reset takes effect at the next edge): those accesses belong to no run.
            // Both lane loops unrolled: each lane's slices of the wide buses at constant offsets,
            // where the loop computed them (and shifted the 5,248-bit rd_data) lane by lane, every
            // cycle (e_small: 320 write and 656 read lanes; docs/cosim.md, "Where e_small's time goes").
            // Each runs only in a cycle with a lane of its port enabled (the clock ticks when either does).
            if (|wr_en) begin
                /*verilator unroll_full*/
                for (l = 0; l < WL; l = l + 1) begin
                    if (wr_en[l]) begin
                        a = wr_addr[32*l +: 32];
                        if (a < tb_dram_bytes && a < DRAM_BYTES)
                            dram[a] = wr_data[8*l +: 8];
                        else if (!oob) begin
                            oob <= 1'b1;
                            oob_addr <= a;
                        end
                        if (done) late_write <= 1'b1;
                    end
                end
            end
            if (|rd_en) begin
                rd_data <= LANE_JUNK ^ {RL{count[7:0]}};     // the disabled lanes' junk: don't care
                /*verilator unroll_full*/
                for (l = 0; l < RL; l = l + 1) begin
                    if (rd_en[l]) begin
                        a = rd_addr[32*l +: 32];
                        if (a < tb_dram_bytes && a < DRAM_BYTES)
                            rd_data[8*l +: 8] <= dram[a];
                        else begin
                            rd_data[8*l +: 8] <= 8'hee;
                            if (!oob) begin
                                oob <= 1'b1;
                                oob_addr <= a;
                            end
                        end
                    end
                end
            end
        end
    end
endmodule

// What the testbench reaches through VPI, and nothing else: the model is built without
// --public-flat-rw (tests/cosim/runner.py, FAST_BUILD), which would make every signal
// writable from outside and so make Verilator recompute the whole design at each
// evaluation (7x slower here; docs/cosim.md, "Verilator options").  The wrapper's ports are
// read and written (the two constant outputs too: read before the first evaluation, they
// need the writable form to hold their value), the accelerator's DRAM ports only read
// (tb_accelerator.read_geometry takes the lane counts from their widths): named exactly, in
// the accelerator's module only.  A pattern such as -module "*" -var "dram_rd__*" also made
// public every unit's copy of those ports and every Yosys wire named after them
// (dram_rd__data$1270), which Verilator then kept and copied, lane by lane, at every clock edge
// (e_small: 27,809 such assignments in the model; docs/cosim.md, "Where e_small's time goes").
`verilator_config
public_flat_rw -module "accel_tb_top" -var "clk"
public_flat_rw -module "accel_tb_top" -var "rst"
public_flat_rw -module "accel_tb_top" -var "start"
public_flat_rw -module "accel_tb_top" -var "tb_load"
public_flat_rw -module "accel_tb_top" -var "tb_dram_bytes"
public_flat_rw -module "accel_tb_top" -var "tb_imem_words"
public_flat_rw -module "accel_tb_top" -var "tb_dram_size"
public_flat_rd -module "accel_tb_top" -var "*"
public_flat_rd -module "accelerator_*" -var "dram_rd__en"
public_flat_rd -module "accelerator_*" -var "dram_rd__addr"
public_flat_rd -module "accelerator_*" -var "dram_rd__data"
public_flat_rd -module "accelerator_*" -var "dram_wr__en"
public_flat_rd -module "accelerator_*" -var "dram_wr__addr"
public_flat_rd -module "accelerator_*" -var "dram_wr__data"
public_flat_rd -module "accelerator_*" -var "vec_rd__en"
public_flat_rd -module "accelerator_*" -var "vec_rd__addr"
public_flat_rd -module "accelerator_*" -var "vec_rd__data"
public_flat_rd -module "accelerator_*" -var "vec_wr__en"
public_flat_rd -module "accelerator_*" -var "vec_wr__addr"
public_flat_rd -module "accelerator_*" -var "vec_wr__data"
