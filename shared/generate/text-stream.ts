/**
 * Turning generated token ids into streamed text: incremental detokenization that never emits
 * half a character, and stop strings that are never partly emitted.
 */

/** Anything that decodes token ids to text (e.g. a {@link TextTokenizer}). */
export interface Decoder {
  decode(ids: readonly number[]): string;
}

const REPLACEMENT = '\uFFFD';

/**
 * Incremental detokenizer (the offsets scheme of TGI / vLLM): each new token's text is the
 * difference between decoding a short window with and without it. The window starts one emitted
 * step back so decoders that strip a leading space (SentencePiece) or merge bytes (byte-level BPE)
 * see context. While the decoded window ends in U+FFFD — a byte-level token ended inside a UTF-8
 * character — nothing is emitted until a later token completes it; {@link flush} releases what is
 * left at the end. The concatenation of everything emitted equals `decode(allIds)`.
 * @example
 * const d = new IncrementalDetokenizer(tokenizer);
 * let text = '';
 * for (const id of ids) text += d.push(id);
 * text += d.flush();
 */
export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly decoder: Decoder) {}

  /** Adds a token; returns the text it completes ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const after = this.decoder.decode(this.ids.slice(this.prefixOffset));
    if (after.length <= before.length || after.endsWith(REPLACEMENT)) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return after.slice(before.length);
  }

  /** The text still held back (an incomplete character at the very end decodes as U+FFFD). */
  flush(): string {
    const before = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const after = this.decoder.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return after.length > before.length ? after.slice(before.length) : '';
  }
}

/** Result of {@link StopMatcher.push}: text safe to emit, and whether a stop string was hit. */
export interface StopResult {
  text: string;
  stopped: boolean;
}

/**
 * Finds stop strings in streamed text. Text that might be the start of a stop string is held back
 * until it is known not to be one, so a client never sees a partial stop string; on a match the
 * text before it is released and the stop string itself is dropped (OpenAI semantics).
 * @example
 * const m = new StopMatcher(['\n\n']);
 * m.push('Hello\n'); // { text: 'Hello', stopped: false }
 * m.push('\nmore');  // { text: '', stopped: true }
 */
export class StopMatcher {
  private pending = '';
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  push(text: string): StopResult {
    if (this.stops.length === 0) return { text, stopped: false };
    this.pending += text;
    let first = -1;
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      const out = this.pending.slice(0, first);
      this.pending = '';
      return { text: out, stopped: true };
    }
    // Hold back the longest suffix that is a prefix of some stop string.
    let hold = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.pending.length); n > hold; n--) {
        if (this.pending.endsWith(stop.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text: out, stopped: false };
  }

  /** Releases held-back text at the end of generation (it turned out not to be a stop string). */
  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }
}
