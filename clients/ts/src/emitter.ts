/** A small typed event emitter: on() returns the function that removes the listener. */
export class Emitter<Events extends object> {
  #listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  on<K extends keyof Events>(type: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => this.off(type, listener);
  }

  once<K extends keyof Events>(type: K, listener: (payload: Events[K]) => void): () => void {
    const off = this.on(type, (p) => {
      off();
      listener(p);
    });
    return off;
  }

  off<K extends keyof Events>(type: K, listener: (payload: Events[K]) => void): void {
    this.#listeners.get(type)?.delete(listener as (payload: never) => void);
  }

  protected emit<K extends keyof Events>(type: K, payload: Events[K]): void {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as (p: Events[K]) => void)(payload);
      } catch (err) {
        // A listener's bug must not break the protocol state machine
        // that called it; report it where the host reports such things.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
