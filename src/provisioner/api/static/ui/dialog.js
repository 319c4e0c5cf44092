// Modal dialogs (<dialog>): a confirmation before every action, and the token prompt.
import { h } from "./dom.js";

/**
 * Ask before acting. `fields` are extra form controls (elements with a name); resolves to
 * the form's values when confirmed, or null when dismissed (Cancel, Escape).
 */
export function confirmAction({ title, text, confirmLabel, fields = [], danger = false }) {
  return ask({
    title,
    body: [h("p", {}, text), ...fields],
    confirmLabel,
    danger,
  });
}

/**
 * A dialog with a form. `check(values)` may return an error text to keep the dialog open.
 * Focus starts on the first field, else on Cancel (a stray Enter does not act).
 */
export function ask({ title, body, confirmLabel, danger = false, check }) {
  return new Promise((resolve) => {
    const error = h("p", { class: "dialog-error", role: "alert", hidden: true });
    const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");
    const confirm = h(
      "button",
      { type: "submit", class: danger ? "primary danger" : "primary", value: "confirm" },
      confirmLabel,
    );
    const form = h("form", { method: "dialog" },
      h("h2", {}, title), body, error, h("div", { class: "dialog-buttons" }, cancel, confirm));
    const dialog = h("dialog", { "aria-label": title }, form);
    let result = null;
    cancel.addEventListener("click", () => dialog.close());
    form.addEventListener("submit", (event) => {
      const values = Object.fromEntries(new FormData(form).entries());
      const problem = check ? check(values) : null;
      if (problem) {
        event.preventDefault();
        error.textContent = problem;
        error.hidden = false;
        return;
      }
      result = values;
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    (form.querySelector("input, textarea, select") ?? cancel).focus();
  });
}
