// Preloaded by scripts/bench into the Portkey gateway, whose CLI has no host option: every
// server it starts listens on 127.0.0.1 only, so the benchmark never opens a public port.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number") {
    const [port, ...rest] = args;
    const callback = rest.find((item) => typeof item === "function");
    return callback ? listen.call(this, port, "127.0.0.1", callback) : listen.call(this, port, "127.0.0.1");
  }
  if (args[0] && typeof args[0] === "object" && !args[0].path) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
