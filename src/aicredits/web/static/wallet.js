// Razorpay Checkout on the pay page (loaded after checkout.js): open it with the server's options;
// its success handler posts order id, payment id and signature to the callback form (verified on the
// server before anything is credited); a failure is shown, and the customer can try again.
(function () {
  const data = document.getElementById("checkout-options");
  const button = document.getElementById("pay-button");
  const form = document.getElementById("razorpay-callback");
  const status = document.getElementById("checkout-status");
  if (!data || !button || !form || typeof window.Razorpay !== "function") {
    if (status) status.textContent = "The payment window could not be loaded; reload the page to try again.";
    return;
  }
  const options = JSON.parse(data.textContent);
  options.handler = function (response) {
    for (const name of ["razorpay_order_id", "razorpay_payment_id", "razorpay_signature"]) {
      form.elements[name].value = response[name] || "";
    }
    status.textContent = "Payment received; confirming…";
    form.submit();
  };
  options.modal = { ondismiss: function () { status.textContent = "Checkout closed; you can pay again."; } };
  const checkout = new window.Razorpay(options);
  checkout.on("payment.failed", function (response) {
    const why = (response && response.error && response.error.description) || "the payment failed";
    status.textContent = "The payment failed: " + why + " Nothing was charged to your wallet; you can try again.";
  });
  button.addEventListener("click", function () { status.textContent = ""; checkout.open(); });
  button.disabled = false;
})();
