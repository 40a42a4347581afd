// @ts-check
// A stand-in for the anywidget model a view gets: traits (get/set/change events), custom
// messages both ways (send records what the page sent; emit plays the kernel).

import { afterEach, beforeEach } from "vitest";
import { Channel } from "../src/shared/channel.js";

export class FakeModel {
  /** @param {Record<string, unknown>} [traits] */
  constructor(traits = {}) {
    /** @type {Map<string, unknown>} */
    this.traits = new Map(Object.entries(traits));
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
    /** @type {{content: any, buffers: any[] | undefined}[]} what the page sent */
    this.sent = [];
  }

  /** @param {string} name */
  get(name) {
    return this.traits.get(name);
  }

  /** @param {string} name @param {unknown} value */
  set(name, value) {
    this.traits.set(name, value);
    this.fire(`change:${name}`, value);
  }

  save_changes() {}

  /** @param {string} event @param {Function} fn */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)?.add(fn);
  }

  /** @param {string} event @param {Function} fn */
  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
  }

  /** @param {string} event @param {...unknown} args */
  fire(event, ...args) {
    for (const fn of [...(this.listeners.get(event) || [])]) fn(...args);
  }

  /** @param {any} content @param {unknown} [_callbacks] @param {any[]} [buffers] */
  send(content, _callbacks, buffers) {
    this.sent.push({ content, buffers });
  }

  /** The kernel sends a custom message. @param {any} msg @param {any[]} [buffers] */
  emit(msg, buffers = []) {
    this.fire("msg:custom", msg, buffers);
  }

  /** The kernel answers the request `content` (from `sent`). */
  reply(/** @type {any} */ content, /** @type {Record<string, unknown>} */ body = {}, ok = true, /** @type {any[]} */ buffers = []) {
    this.emit({ type: "reply", uuid: content.uuid, ok, ...body }, buffers);
  }

  /** The messages of one type the page sent. @param {string} type */
  ofType(type) {
    return this.sent.filter((s) => s.content.type === type);
  }
}

/**
 * A fresh FakeModel and a Channel over it for each test of the enclosing `describe`
 * (disposed after it): `const ctx = channelPerTest();` then `ctx.model`, `ctx.channel`.
 * @returns {{model: FakeModel, channel: Channel}}
 */
export function channelPerTest() {
  const ctx = /** @type {{model: FakeModel, channel: Channel}} */ ({});
  beforeEach(() => {
    ctx.model = new FakeModel();
    ctx.channel = new Channel(ctx.model);
  });
  afterEach(() => ctx.channel.dispose());
  return ctx;
}
