import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, DeleteCommand } from "@aws-sdk/lib-dynamodb";

const ddbDocClient = DynamoDBDocumentClient.from(new DynamoDBClient({}));

export const handler = async (event) => {
  const command = new DeleteCommand({
    TableName: process.env.TABLE_NAME,
    Key: { connectionId: event.requestContext.connectionId },
  });
  try {
    await ddbDocClient.send(command);
  } catch (err) {
    console.log(err);
    return { statusCode: 500 };
  }
  return { statusCode: 200 };
};
