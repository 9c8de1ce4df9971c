// The part of npm seek-bzip (a CommonJS module without its own types) that src/eval/data.ts uses.
declare module 'seek-bzip' {
  const Bunzip: {
    /** Decompresses a whole .bz2 stream; throws on bad data. */
    decode(input: Uint8Array): Uint8Array;
  };
  export default Bunzip;
}
