HYPERPARAMETERS = {
    "epochs": 20,
    "batch_size": 32,
    "loss": "CrossEntropyLoss",
    "loss_params": {},
    "optimizer": "Adam",
    "optimizer_params": {"lr": 0.005},
}
