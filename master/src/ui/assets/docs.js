// Renders /-/openapi.json for people: every path of the master, then of a
// volume (x-volume-paths), with each method's parameters and answers.
"use strict";

const METHODS = ["get", "head", "put", "post", "delete", "x-unlink"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Follows a local `$ref` ("#/components/…"). */
function resolve(doc, item) {
  if (!item || !item.$ref) return item;
  return item.$ref.slice(2).split("/").reduce((node, part) => node[part], doc);
}

function schemaName(media) {
  const schema = media && media.schema;
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  return Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "";
}

function operation(doc, path, method, op, shared) {
  const params = [...(shared || []), ...(op.parameters || [])].map((p) => resolve(doc, p));
  const responses = Object.entries(op.responses || {}).map(([code, r]) => {
    r = resolve(doc, r);
    const types = Object.entries(r.content || {}).map(([type, media]) => type + (schemaName(media) ? " " + schemaName(media) : ""));
    return el("li", {}, el("b", {}, code), " ", r.description || "", types.length ? el("span", { class: "muted" }, " — " + types.join(", ")) : "");
  });
  const verb = method === "x-unlink" ? "UNLINK" : method.toUpperCase();
  return el("article", { class: "panel" },
    el("h3", {}, el("span", { class: "badge" }, verb), " ", el("code", {}, path), " ", el("small", {}, op.summary || "")),
    op.description ? el("p", {}, op.description) : null,
    params.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "about"))),
      el("tbody", {}, params.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name), p.required ? " *" : ""), el("td", {}, p.in), el("td", {}, p.description || ""))))) : null,
    el("ul", {}, responses));
}

function section(doc, title, paths) {
  const parts = [el("h2", {}, title)];
  for (const [path, item] of Object.entries(paths || {})) {
    for (const method of METHODS) {
      if (item[method]) parts.push(operation(doc, path, method, item[method], item.parameters));
    }
  }
  return parts;
}

fetch("/-/openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("api").replaceChildren(
    el("section", { class: "panel" }, el("h2", {}, doc.info.title + " " + doc.info.version), el("p", {}, doc.info.description)),
    ...section(doc, "Master", doc.paths),
    ...section(doc, "Volume", doc["x-volume-paths"]));
}).catch((e) => {
  document.getElementById("api").replaceChildren(el("p", { class: "error" }, "Cannot load /-/openapi.json: " + e.message));
});
