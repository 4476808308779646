// The dashboard's only script: copy buttons (data-copy="ID of the input to copy").
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
  } catch (_) {
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
});

// Print buttons (data-print): the receipt page.
document.addEventListener("click", (event) => {
  if (event.target.closest("button[data-print]")) window.print();
});
